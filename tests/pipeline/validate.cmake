ib_add_test(test_pipeline_validate SOURCES ${CMAKE_CURRENT_LIST_DIR}/validate_test.cc)
