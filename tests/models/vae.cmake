ib_add_test(test_models_vae SOURCES ${CMAKE_CURRENT_LIST_DIR}/vae_test.cc LABELS fixture)
