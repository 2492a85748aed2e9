#!/usr/bin/env bash
# bench/dhcp.sh: DHCP DORA exchanges per second of bootsrv serve, dnsmasq and Kea,
# side by side in one run, under ISC perfdhcp (2,000 simulated relayed
# clients, < 1 % lost), each server in its own network namespace on a veth
# pair the test creates and removes. Prints the three rates and the ratios.
#
# Needs root, iproute2, bin/bootsrv (make build), perfdhcp (Debian kea-admin),
# dnsmasq (dnsmasq-base) and kea-dhcp4 (kea-dhcp4-server; without it, no Kea figure).
# Tunables (environment): BOOTSRV_BIN (bin/bootsrv), BENCH_DHCP_LOG_LEVEL (warn),
# BENCH_DHCP_SECONDS (5), BENCH_DHCP_START (125),
# BENCH_DHCP_MAX (32000), BENCH_DHCP_RAW=1 (print perfdhcp's output),
# BENCH_DHCP_CPUPROFILE=FILE (bootsrv CPU profile).
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSRV_BENCH_DHCP=1 exec go test -count=1 -run '^TestPerfdhcpVsDnsmasq$' -v ./pkg/dhcp "$@"
