ib_add_test(test_models_t5 SOURCES ${CMAKE_CURRENT_LIST_DIR}/t5_test.cc LABELS fixture)
