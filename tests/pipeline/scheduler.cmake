# The scheduler tests: one source, built twice so the unit tests (no fixture) and the fixture
# trajectory tests carry their own labels.
ib_add_test(test_pipeline_scheduler SOURCES ${CMAKE_CURRENT_LIST_DIR}/scheduler_test.cc)
ib_add_test(test_pipeline_scheduler_fixture SOURCES ${CMAKE_CURRENT_LIST_DIR}/scheduler_test.cc LABELS fixture)
target_compile_definitions(test_pipeline_scheduler_fixture PRIVATE IB_SCHEDULER_FIXTURE_TESTS=1)
