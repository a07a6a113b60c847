ib_add_test(test_pipeline_progress SOURCES ${CMAKE_CURRENT_LIST_DIR}/progress_test.cc)
