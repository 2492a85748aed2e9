// Command bootstorm plays a boot storm against `bootsrv serve`: N machines
// power on together and each goes through the whole journey a real one
// does (DHCP as the PXE ROM, TFTP of the first stage from its leased
// address, DHCP as iPXE, /boot.ipxe and /ipxe, kernel and initrd from
// /assets, /ignition with the script's token, /report), with think times
// like firmware's. Then it checks what bootsrv knows: every machine
// provisioned, one lease each, no address twice, every ACKed lease on disk,
// every history in order.
//
//	bootstorm [-n 1000] [-kills 0] [-bin bin/bootsrv] [-o json]
//
// It builds two network namespaces joined by a veth pair: bootsrv serve in
// one, on its defaults apart from its addresses, and the machines in the
// other, where a relay agent socket (giaddr) carries every MAC's DHCP and a
// local route lets each machine use its own leased address for TFTP and
// HTTP. Both namespaces go when it ends. It needs root and iproute2.
//
// -kills K SIGKILLs bootsrv K times at random moments of the storm and
// starts it again; the machines retry as firmware would, and the checks
// must still hold. At the end bootsrv gets SIGTERM and must drain within
// -drain.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "client":
		err = clientMain(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "wait":
		err = waitMain(os.Args[2:])
	default:
		err = harnessMain(os.Args[1:])
	}
	if err != nil {
		var fe failedError
		fmt.Fprintln(os.Stderr, "bootstorm:", err)
		if errors.As(err, &fe) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// failedError is a storm that ran and found something wrong (exit 1); any
// other error is a storm that could not run (exit 2).
type failedError struct{ msg string }

func (e failedError) Error() string { return e.msg }
