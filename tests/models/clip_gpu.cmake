if(INBETWEEN_CUDA)
  ib_add_test(test_clip_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/clip_gpu_test.cc LABELS gpu)
endif()
