ib_add_test(test_pipeline_options SOURCES ${CMAKE_CURRENT_LIST_DIR}/options_test.cc)
