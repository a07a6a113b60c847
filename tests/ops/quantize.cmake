ib_add_test(test_ops_quantize SOURCES ${CMAKE_CURRENT_LIST_DIR}/quantize_test.cc)
