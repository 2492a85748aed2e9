#!/usr/bin/env bash
# demo-cluster.sh: the second half of the demo (demo.sh runs it as lab.sh's
# LAB_AFTER_CMD, inside the lab's namespace, with every VM up). It proves
# the cluster works, prints what it found, and records it under DEMO_OUT
# (default $LAB_RUN_DIR/demo) for the end-to-end test to check:
#
#   nodes.json            `kubectl get nodes -o json` once all are Ready
#   pods.json             the test pods, after the client finished
#   certs-before.json     `bootsrv certs list -o json` before the reprovision
#   certs-after.json      ... and after worker2 rejoined
#   serving-before.pem    the certificate worker2's kubelet served on :10250
#   serving-after.pem     ... before the reprovision and after it rejoined
#   results.env           KEY=VALUE lines: what was checked and each node's times
#
# Exit status 0 only when every check passed.
set -euo pipefail
: "${LAB_RUN_DIR:?run me through demo.sh}" "${DEMO_BOOTSRV:?}" "${DEMO_DATA:?}" "${DEMO_KUBECTL:?}"
out=${DEMO_OUT:-$LAB_RUN_DIR/demo}
mkdir -p "$out"
B=("$DEMO_BOOTSRV" --data-dir "$DEMO_DATA")
kc=$out/admin.kubeconfig
K=("$DEMO_KUBECTL" --kubeconfig "$kc" --request-timeout 20s)
NODES=(master1 worker1 worker2)
t0=$(date +%s)
log() { printf '[demo %4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
result() { echo "$1=$2" >>"$out/results.env"; }
fail() { log "FAILED: $*"; result failed "\"$*\""; exit 1; }
: >"$out/results.env"

"${B[@]}" kubeconfig admin >"$kc"

# ready_nodes: "name=True|False|Unknown" per node.
ready_nodes() {
	"${K[@]}" get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null
}
wait_ready() { # wait_ready SECONDS NODE...: until each NODE is Ready
	local deadline=$(($(date +%s) + $1)) last="" now; shift
	while :; do
		now=$(ready_nodes | sort | tr '\n' ' ')
		[[ "$now" != "$last" ]] && log "nodes: ${now:-(the apiserver does not answer yet)}"
		last=$now
		local ok=1 n
		for n in "$@"; do [[ " $now" == *" $n=True "* ]] || ok=0; done
		((ok)) && return 0
		(($(date +%s) < deadline)) || return 1
		sleep 5
	done
}

log "waiting for ${NODES[*]} to be Ready (the kubelets register as each VM's systemd starts them)"
wait_ready 900 "${NODES[@]}" || {
	"${K[@]}" get nodes -o wide || true
	fail "not every node became Ready within 900 s"
}
"${K[@]}" get nodes -o json >"$out/nodes.json"
result nodes_ready "$(jq -r '[.items[] | select(any(.status.conditions[]; .type == "Ready" and .status == "True")) | .metadata.name] | sort | join(",")' "$out/nodes.json")"
echo
echo "\$ bootsrv machine list"
"${B[@]}" machine list
echo
echo "\$ kubectl get nodes -o wide"
"${K[@]}" get nodes -o wide
echo

# ---------------------------------------------------------------- the network
# Pods need their namespace's service account, which the controller-manager
# creates once it holds its lease: on a cluster this young, wait for it.
deadline=$(($(date +%s) + 300))
until "${K[@]}" get serviceaccount default >/dev/null 2>&1; do
	(($(date +%s) < deadline)) || fail "the controller-manager made no service account default/default within 300 s"
	sleep 3
done
log "test pods: web on worker2 (labpod serve) behind Service web; client on worker1"
"${K[@]}" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeSelector: {kubernetes.io/hostname: worker2}
  containers:
  - name: web
    image: registry.k8s.io/bootsrv-lab/labpod:1
    args: [serve, ":8080"]
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
"${K[@]}" wait --for=condition=Ready pod/web --timeout=600s >/dev/null || {
	"${K[@]}" describe pod web | tail -n 25
	fail "pod web on worker2 did not become Ready"
}
web_ip=$("${K[@]}" get pod web -o jsonpath='{.status.podIP}')
svc_ip=$("${K[@]}" get service web -o jsonpath='{.spec.clusterIP}')
log "web: pod IP $web_ip on worker2, Service web $svc_ip"
"${K[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: worker1}
  restartPolicy: Never
  containers:
  - name: client
    image: registry.k8s.io/bootsrv-lab/labpod:1
    args: [check, "http://$web_ip:8080/", "http://$svc_ip/", "http://web.default.svc.cluster.local/", "dns:kubernetes.default"]
EOF
deadline=$(($(date +%s) + 600))
phase=""
while :; do
	phase=$("${K[@]}" get pod client -o jsonpath='{.status.phase}' 2>/dev/null || true)
	[[ "$phase" == Succeeded || "$phase" == Failed ]] && break
	(($(date +%s) < deadline)) || break
	sleep 3
done
"${K[@]}" get pods -o json >"$out/pods.json"
echo "\$ kubectl get pods -o wide"
"${K[@]}" get pods -o wide
msg=$("${K[@]}" get pod client -o jsonpath='{.status.containerStatuses[0].state.terminated.message}' 2>/dev/null || true)
echo "client (worker1) says: $msg" | sed 's/^/  /'
[[ "$phase" == Succeeded ]] || fail "the client pod on worker1 ended '$phase', not Succeeded"
grep -q "^ok http://$web_ip:8080/" <<<"$msg" && result pod_to_pod "worker1->worker2 $web_ip ok"
grep -q "^ok http://$svc_ip/" <<<"$msg" && result service "worker1->$svc_ip ok"
grep -q "^ok dns:kubernetes.default: resolves to" <<<"$msg" && result dns "kubernetes.default $(sed -n 's/^ok dns:kubernetes.default: resolves to //p' <<<"$msg")"
echo

# ---------------------------------------------------------------- times
sec() { date -d "$1" +%s.%N; }
printf '  %-8s %22s %18s\n' NODE "power-on->provisioned" "power-on->Ready"
for n in "${NODES[@]}"; do
	on=$(cat "$LAB_RUN_DIR/$n.started")
	mac=$("${B[@]}" machine list -o json | jq -r --arg h "$n" '.[] | select(.hostname == $h) | .mac')
	prov=$("${B[@]}" machine show "$mac" -o json | jq -r '[.events[] | select(.type == "provisioned")] | last | .time')
	ready=$(jq -r --arg n "$n" '.items[] | select(.metadata.name == $n) | .status.conditions[] | select(.type == "Ready") | .lastTransitionTime' "$out/nodes.json")
	p=$(awk -v a="$on" -v b="$(sec "$prov")" 'BEGIN { printf "%.0f", b - a }')
	r=$(awk -v a="$on" -v b="$(sec "$ready")" 'BEGIN { printf "%.0f", b - a }')
	printf '  %-8s %20ss %16ss\n' "$n" "$p" "$r"
	result "time_${n}" "provisioned=${p}s ready=${r}s"
done
echo

# ---------------------------------------------------------------- reprovision
reprovision_worker2() {
served_cert() { # served_cert IP FILE: the certificate a kubelet serves on :10250
	openssl s_client -connect "$1:10250" </dev/null 2>/dev/null | openssl x509 >"$2" 2>/dev/null
}
w2=$("${B[@]}" machine list -o json | jq -r '.[] | select(.hostname == "worker2") | .mac')
w2ip=$("${B[@]}" machine list -o json | jq -r '.[] | select(.hostname == "worker2") | .ip')
served_cert "$w2ip" "$out/serving-before.pem" || fail "worker2's kubelet serves no certificate on $w2ip:10250"
"${B[@]}" certs list -o json >"$out/certs-before.json"
log "reprovision: bootsrv machine reprovision $w2 (worker2), then a power cycle (QEMU system_reset)"
"${B[@]}" machine reprovision "$w2" >/dev/null
reset_at=$(date +%s)
port=$(cat "$LAB_RUN_DIR/worker2.monitor")
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'system_reset\n' >&3
sleep 1
exec 3>&-
# Rejoined: the kubelet on worker2 serves a certificate other than before,
# the one bootsrv issued anew, and the node is Ready with a heartbeat sent
# after the reset (so from the new kubelet: the old one died with the reset;
# a Ready left over from before the reset does not count).
heartbeat_after_reset() {
	local hb
	hb=$("${K[@]}" get node worker2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
	[[ "$hb" == "True "* ]] && (($(date -d "${hb#True }" +%s) > reset_at))
}
deadline=$(($(date +%s) + 900))
last=""
while :; do
	if served_cert "$w2ip" "$out/serving-after.pem" && ! cmp -s "$out/serving-before.pem" "$out/serving-after.pem"; then
		[[ -n "$last" ]] || { log "worker2's kubelet serves its new certificate"; last=cert; }
		heartbeat_after_reset && break
	fi
	(($(date +%s) < deadline)) || fail "worker2 did not rejoin Ready with a new certificate within 900 s of its reset"
	sleep 5
done
"${B[@]}" certs list -o json >"$out/certs-after.json"
"${K[@]}" get nodes -o json >"$out/nodes-after.json"
fp=$(openssl x509 -in "$out/serving-after.pem" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
issued=$(jq -r --arg m "$w2" --arg fp "$fp" '[.[] | select(.mac == $m and (.sha256 | ascii_downcase | gsub(":"; "")) == $fp)] | length' "$out/certs-after.json")
[[ "$issued" -ge 1 ]] || fail "worker2's kubelet serves a certificate ($fp) that bootsrv did not issue"
result reprovision "worker2 Ready again $(($(date +%s) - reset_at))s after its reset, serving certificate sha256 $fp"
log "worker2 rejoined Ready $(($(date +%s) - reset_at)) s after its power cycle, with its new certificate"
echo "\$ bootsrv machine show $w2 (last events)"
"${B[@]}" machine events "$w2" | tail -n 12
echo
"${K[@]}" get nodes -o wide
}
if [[ "${DEMO_REPROVISION:-1}" == 0 ]]; then
	log "DEMO_REPROVISION=0: not reprovisioning worker2"
else
	reprovision_worker2
fi
log "all checks passed"

if [[ -n "${DEMO_HOLD:-}" ]]; then
	cat <<HOLD

The lab stays up until Ctrl-C. From another shell (as root):
  ip netns exec $LAB_NETNS $DEMO_KUBECTL --kubeconfig $kc get nodes -o wide
  ip netns exec $LAB_NETNS $DEMO_BOOTSRV --data-dir $DEMO_DATA machine list
  examples/qemu-lab/lab-vm.sh $LAB_NETNS worker3 52:54:00:00:00:04   # one more worker (see README.md)
Serial consoles and journals: $LAB_RUN_DIR/*.serial.log, *.journal.log
HOLD
	while :; do sleep 3600; done
fi
