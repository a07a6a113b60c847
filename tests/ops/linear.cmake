ib_add_test(test_ops_linear SOURCES ${CMAKE_CURRENT_LIST_DIR}/linear_test.cc)
