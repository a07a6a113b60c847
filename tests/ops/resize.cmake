ib_add_test(test_ops_resize SOURCES ${CMAKE_CURRENT_LIST_DIR}/resize_test.cc)
