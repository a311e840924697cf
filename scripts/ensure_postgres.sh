#!/usr/bin/env sh
# The store tests start their own PostgreSQL server (tests/conftest.py). Make sure its binaries are
# here: Debian's postgresql package when they are missing (as root, with apt). Never fatal: without
# them the PostgreSQL variants of the tests are skipped, and pytest prints why.
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL's server binaries (Debian's postgresql) for the store tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1) \
        || echo "could not install postgresql: the PostgreSQL store tests will be skipped"
else
    echo "PostgreSQL's server binaries are missing and cannot be installed here: the PostgreSQL store tests will be skipped"
fi
exit 0
