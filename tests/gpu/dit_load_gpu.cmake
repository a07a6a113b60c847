# The GPU engine's DiT loaded from a checkpoint tensor by tensor (DitRunner::load): the same bits
# as from a WanDiT, LoRAs merged on the device as on the CPU (label gpu: run on the lent GPU).
if(INBETWEEN_CUDA)
  ib_add_test(test_dit_load_gpu SOURCES ${CMAKE_CURRENT_LIST_DIR}/dit_load_gpu_test.cc LABELS gpu)
  target_link_libraries(test_dit_load_gpu PRIVATE ib_gpu)
endif()
