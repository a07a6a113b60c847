ib_add_test(test_pipeline_demo_model SOURCES ${CMAKE_CURRENT_LIST_DIR}/demo_model_test.cc)
