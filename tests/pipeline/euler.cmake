ib_add_test(test_pipeline_euler SOURCES ${CMAKE_CURRENT_LIST_DIR}/euler_test.cc)
