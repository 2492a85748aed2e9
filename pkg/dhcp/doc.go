// Package dhcp is bootsrv's DHCPv4 server: it answers the DHCP exchange that
// starts every network boot, handing a machine its address (a reservation
// from its record, or a lease from a pool) and the first-stage boot file its
// firmware needs.
//
// The package is split the way the rest of bootsrv is: Inspect turns a
// request into facts about the client, Decide is a pure function from a
// request, the machine record and the lease state to a reply (or silence),
// Leases keeps the lease table in memory and durable in bbolt, and Server is
// the thin socket loop that reads, calls Decide, writes, and records events.
package dhcp
