// Package noderun runs the systemd units of a rendered node as plain
// processes in a network namespace, for tests on a machine without systemd.
//
// A test hands a rendered Ignition config to the real Ignition binary
// (Install), reads the units Ignition wrote (LoadUnits), turns a unit's
// ExecStart into an argv and environment the way systemd would, with
// absolute paths under a few prefixes moved under the install root
// (Unit.Command), and starts it inside a namespace that holds the node's IP
// (NewNetns, Netns.Start). Nothing is re-typed by hand: what runs is what
// the config says, so a wrong flag, path or hash in a rendered config fails
// the test the way it would fail the node.
//
// Parsing is pure and table-tested; only Install, NewNetns and Start touch
// the machine, and those skip (in tests) or fail with what is missing.
package noderun
