if(INBETWEEN_CUDA)
  ib_add_test(test_scheduler_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/scheduler_gpu_test.cc LABELS gpu)
endif()
