ib_add_test(test_pipeline_vram_plan SOURCES ${CMAKE_CURRENT_LIST_DIR}/vram_plan_test.cc)
