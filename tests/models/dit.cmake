ib_add_test(test_models_dit SOURCES ${CMAKE_CURRENT_LIST_DIR}/dit_test.cc LABELS fixture)
