# Tests of `inbetween serve` (app/server): API tests against a real server process with the fixture
# model, a load test, and a browser test (node + playwright-core + Debian's Chromium).
ib_add_test(test_server_api SOURCES ${CMAKE_CURRENT_LIST_DIR}/api_test.cc LABELS fixture)
target_link_libraries(test_server_api PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_api inbetween)

ib_add_test(test_server_load SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_test.cc LABELS fixture)
target_link_libraries(test_server_load PRIVATE PkgConfig::HTTPLIB)
add_dependencies(test_server_load inbetween)

# The browser test needs node, node_modules/playwright-core (npm ci) and /usr/bin/chromium, all
# installed by scripts/setup_web.sh. Without them it exits 77 (skipped), unless
# INBETWEEN_REQUIRE_BROWSER=1 makes that a failure (CI).
find_program(IB_NODE node)
if(NOT IB_NODE)
  # No ';' inside: CMake would split the script into list items there.
  set(IB_NODE sh -c "echo 'node not found: run scripts/setup_web.sh' && test \"\$INBETWEEN_REQUIRE_BROWSER\" != 1 && exit 77 || exit 1" --)
endif()
add_test(NAME server_browser
  COMMAND ${IB_NODE} ${CMAKE_CURRENT_LIST_DIR}/browser_test.mjs
    --inbetween $<TARGET_FILE:inbetween>
    --screenshot ${PROJECT_BINARY_DIR}/server_browser_screenshot.png)
set_tests_properties(server_browser PROPERTIES LABELS "fixture;browser" TIMEOUT 600 SKIP_RETURN_CODE 77)
