ib_add_test(test_pipeline_synth_model SOURCES ${CMAKE_CURRENT_LIST_DIR}/synth_model_test.cc)
