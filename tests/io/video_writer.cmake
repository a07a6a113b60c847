ib_add_test(test_io_video_writer SOURCES ${CMAKE_CURRENT_LIST_DIR}/video_writer_test.cc)
target_link_libraries(test_io_video_writer PRIVATE PkgConfig::PNG)
