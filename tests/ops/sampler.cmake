ib_add_test(test_ops_sampler SOURCES ${CMAKE_CURRENT_LIST_DIR}/sampler_test.cc)
