# qemu-vm.sh: sourced by lab.sh and lab-vm.sh. The QEMU command line of one
# lab VM, the same wherever it boots: firmware, RAM and CPUs, the NIC on a
# tap, the serial console to a file. Callers append what differs (lab.sh:
# -no-reboot, or a monitor and a journal port for VMs that stay up).
#
# qemu_vm_cmd ARRAY NAME FW MiB CPUS MAC UUID TAP RUN
#   FW: bios (SeaBIOS + the NIC's iPXE ROM), uefi (OVMF + the NIC's iPXE EFI
#   ROM) or uefi-pxe (OVMF's own PXE, no NIC ROM: the server must hand out
#   ipxe.efi over TFTP). Writes RUN/NAME.vars.fd (UEFI) or RUN/sercon-port
#   (BIOS). Honours LAB_ACCEL, LAB_NIC, LAB_OVMF_CODE, LAB_OVMF_VARS.
#   Returns 1 for an unknown FW.
qemu_vm_cmd() {
	local -n _cmd=$1
	local name=$2 fw=$3 mem=$4 smp=$5 mac=$6 uuid=$7 tap=$8 run=$9 fwopt=() rom=
	local code=${LAB_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd} vars=${LAB_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
	case $fw in
	bios)
		# SeaBIOS mirrors its console (and iPXE's) on COM1 (0x3f8) given this.
		printf '\xf8\x03' >"$run/sercon-port"
		fwopt=(-fw_cfg "name=etc/sercon-port,file=$run/sercon-port")
		;;
	uefi | uefi-pxe)
		cp "$vars" "$run/$name.vars.fd"
		fwopt=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
			-drive "if=pflash,format=raw,unit=1,file=$run/$name.vars.fd")
		;;
	*) return 1 ;;
	esac
	[[ $fw == uefi-pxe ]] && rom=,romfile=
	_cmd=(qemu-system-x86_64 -nodefaults -name "$name" -machine pc -accel "${LAB_ACCEL:-tcg}"
		-m "$mem" -smp "$smp" -uuid "$uuid" "${fwopt[@]}"
		-boot n -display none -vga none
		-serial "file:$run/$name.serial.log"
		-netdev "tap,id=net0,ifname=$tap,script=no,downscript=no"
		-device "${LAB_NIC:-virtio-net-pci},netdev=net0,mac=$mac$rom")
}
