# Sourced by the benchmark scripts: the flags of every dev chain here (the same as
# keymarket_contracts::toolchain::DEV_ANVIL_ARGS, which `keymarket up` and the tests use; a unit
# test keeps them equal), plus --silent. Add --port, --accounts and the rest per script.
# shellcheck disable=SC2034
KEYMARKET_ANVIL_ARGS=(--balance 1000000000 --gas-limit 1000000000 --order fifo --silent)
