ib_add_test(test_core_tensor SOURCES ${CMAKE_CURRENT_LIST_DIR}/tensor_test.cc)
