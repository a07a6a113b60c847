ib_add_test(test_io_pth_writer SOURCES ${CMAKE_CURRENT_LIST_DIR}/pth_writer_test.cc)
