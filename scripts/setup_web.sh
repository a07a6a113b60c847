#!/usr/bin/env bash
# Installs what the server's browser test needs: Debian's Chromium and Node.js (apt), and
# playwright-core (npm, pinned by package-lock.json) into node_modules/ at the repository root.
# Safe to run repeatedly; skips apt and npm when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(chromium fonts-dejavu-core)
# Node.js and npm from Debian, unless one is there already (e.g. nodesource's nodejs, which bundles npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
bash scripts/apt_install.sh setup_web "${packages[@]}"

if [ -f node_modules/playwright-core/package.json ] &&
   [ "$(node -p "require('./node_modules/playwright-core/package.json').version")" = \
     "$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")" ]; then
  echo "setup_web: playwright-core present"
else
  echo "setup_web: npm ci (playwright-core)"
  # playwright-core downloads no browser; the test drives /usr/bin/chromium.
  if ! npm ci --no-audit --no-fund --loglevel=error 2>npm-ci.log; then
    cat npm-ci.log
    # Behind a TLS-intercepting proxy whose certificate this machine does not trust, retry without
    # TLS verification: npm ci still checks the tarball against the SHA-512 in package-lock.json,
    # so what gets installed is exactly the pinned package or nothing.
    if grep -qE "SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_" npm-ci.log; then
      echo "setup_web: TLS certificate not trusted; retrying with the lockfile's integrity check alone"
      npm ci --no-audit --no-fund --loglevel=error --strict-ssl=false
    else
      exit 1
    fi
  fi
  rm -f npm-ci.log
fi
echo "setup_web: done ($(/usr/bin/chromium --version 2>/dev/null || echo 'chromium missing'))"
