#!/usr/bin/env bash
# bench/dhcp.sh: DHCP DORA exchanges per second of bootsrv and of dnsmasq,
# side by side in one run, under ISC perfdhcp (2,000 simulated relayed
# clients, < 1 % lost), each server in its own network namespace on a veth
# pair the test creates and removes. Prints both rates and their ratio.
#
# Needs root, iproute2, perfdhcp (Debian kea-admin) and dnsmasq (dnsmasq-base).
# Tunables (environment): BENCH_DHCP_SECONDS (5), BENCH_DHCP_START (125),
# BENCH_DHCP_MAX (32000), BENCH_DHCP_RAW=1 (print perfdhcp's output),
# BENCH_DHCP_CPUPROFILE=FILE (bootsrv CPU profile).
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSRV_BENCH_DHCP=1 exec go test -count=1 -run '^TestPerfdhcpVsDnsmasq$' -v ./pkg/dhcp "$@"
