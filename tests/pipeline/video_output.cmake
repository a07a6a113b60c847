# The public video writer (include/inbetween/video.h) the front ends use.
ib_add_test(test_pipeline_video_output SOURCES ${CMAKE_CURRENT_LIST_DIR}/video_output_test.cc)
