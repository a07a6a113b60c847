ib_add_test(test_models_clip SOURCES ${CMAKE_CURRENT_LIST_DIR}/clip_test.cc LABELS fixture)
