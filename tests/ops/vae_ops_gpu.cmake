if(INBETWEEN_CUDA)
  ib_add_test(test_vae_ops_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/vae_ops_gpu_test.cc LABELS gpu)
endif()
