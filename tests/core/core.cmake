ib_add_test(test_core_tensor SOURCES ${CMAKE_CURRENT_LIST_DIR}/tensor_test.cc)
ib_add_test(test_core_cache_file SOURCES ${CMAKE_CURRENT_LIST_DIR}/cache_file_test.cc)
