ib_add_test(test_pipeline_conditioning SOURCES ${CMAKE_CURRENT_LIST_DIR}/conditioning_test.cc)
