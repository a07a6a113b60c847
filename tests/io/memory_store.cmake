ib_add_test(test_io_memory_store SOURCES ${CMAKE_CURRENT_LIST_DIR}/memory_store_test.cc LABELS fixture)
