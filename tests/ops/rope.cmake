ib_add_test(test_ops_rope SOURCES ${CMAKE_CURRENT_LIST_DIR}/rope_test.cc)
