ib_add_test(test_models_vae_tiling SOURCES ${CMAKE_CURRENT_LIST_DIR}/vae_tiling_test.cc LABELS fixture)
