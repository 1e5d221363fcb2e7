package dbprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// ErrBlocked is matched (errors.Is) by every *BlockedError, so a caller can map "this host may not be
// tested from here" to a client error without inspecting the details.
var ErrBlocked = errors.New("conntest: host is not allowed by the network policy")

// BlockedError says which resolved address of Host the Policy refused and why. It is returned before any
// packet is sent to that address, which is what makes the test endpoint safe against SSRF.
type BlockedError struct {
	Host string
	Addr netip.Addr
	Rule string
}

// Error describes the refusal without any credential (there is none in a host name).
func (e *BlockedError) Error() string {
	if e.Host == e.Addr.String() {
		return fmt.Sprintf("conntest: address %s is not allowed (%s)", e.Addr, e.Rule)
	}
	return fmt.Sprintf("conntest: host %q resolves to %s, which is not allowed (%s)", e.Host, e.Addr, e.Rule)
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Resolver turns a host name into addresses. *net.Resolver satisfies it; tests inject a map so that names
// resolving to denied addresses can be checked without DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Mode selects the built-in part of a Policy.
type Mode int

// Modes of a Policy. Production refuses loopback, link-local, cloud metadata and unspecified addresses
// unless they are explicitly allowed (metadata addresses cannot be allowed at all); Development adds no
// built-in rule so a developer can test a database on localhost.
const (
	Production Mode = iota
	Development
)

type namedPrefix struct {
	prefix netip.Prefix
	name   string
}

var (
	metadataPrefixes = []namedPrefix{
		{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata"},
		{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata"},
	}
	productionDenied = []namedPrefix{
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
		{netip.MustParsePrefix("::/128"), "unspecified"},
	}
)

// Policy decides which addresses a connection test may reach. Every address a host name resolves to is
// checked (one bad answer refuses the host), and the drivers then dial only the checked addresses, so a
// DNS answer that changes between check and dial (rebinding) cannot reach a refused address.
//
// Order of rules: explicitly denied networks refuse; in Production, cloud metadata addresses refuse;
// an address inside an explicitly allowed network is accepted; in Production, the built-in networks
// refuse; if allowed networks are configured, anything outside them refuses.
type Policy struct {
	mode    Mode
	allowed []netip.Prefix
	denied  []netip.Prefix
}

// NewPolicy builds a Policy from comma-separated CIDR lists (a bare address means a single host), in the
// format of TEST_ALLOWED_NETWORKS and TEST_DENIED_NETWORKS. An invalid entry is an error, not ignored,
// so a typo cannot silently open the network.
func NewPolicy(mode Mode, allowed, denied string) (*Policy, error) {
	if mode != Production && mode != Development {
		return nil, fmt.Errorf("conntest: unknown policy mode %d", mode)
	}
	a, err := parsePrefixes("TEST_ALLOWED_NETWORKS", allowed)
	if err != nil {
		return nil, err
	}
	d, err := parsePrefixes("TEST_DENIED_NETWORKS", denied)
	if err != nil {
		return nil, err
	}
	return &Policy{mode: mode, allowed: a, denied: d}, nil
}

// PolicyFromEnv reads TEST_ALLOWED_NETWORKS and TEST_DENIED_NETWORKS through getenv (os.Getenv in
// production, a map in tests).
func PolicyFromEnv(mode Mode, getenv func(string) string) (*Policy, error) {
	return NewPolicy(mode, getenv("TEST_ALLOWED_NETWORKS"), getenv("TEST_DENIED_NETWORKS"))
}

func parsePrefixes(name, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("conntest: %s: invalid network %q: %w", name, f, err)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("conntest: %s: invalid address %q: %w", name, f, err)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Check refuses or accepts one address. host is only used in the error.
func (p *Policy) Check(host string, addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	block := func(rule string) error { return &BlockedError{Host: host, Addr: addr, Rule: rule} }
	for _, d := range p.denied {
		if d.Contains(addr) {
			return block("denied network " + d.String())
		}
	}
	if p.mode == Production {
		for _, m := range metadataPrefixes {
			if m.prefix.Contains(addr) {
				return block(m.name)
			}
		}
	}
	for _, a := range p.allowed {
		if a.Contains(addr) {
			return nil
		}
	}
	if p.mode == Production {
		for _, d := range productionDenied {
			if d.prefix.Contains(addr) {
				return block(d.name)
			}
		}
	}
	if len(p.allowed) > 0 {
		return block("outside the allowed networks")
	}
	return nil
}

// Resolve returns the addresses of host after checking every one of them. An address literal is checked
// without a lookup. A lookup failure is returned as is (it is a HOST_UNREACHABLE result, not a policy
// refusal); a refused address is a *BlockedError.
func (p *Policy) Resolve(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if err := p.Check(host, a); err != nil {
			return nil, err
		}
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if err := p.Check(host, a); err != nil {
			return nil, err
		}
		out = append(out, a.Unmap().WithZone(""))
	}
	return out, nil
}

// guardedDialer is given to every driver for one test. It dials only addresses the Policy accepted: the
// target host's addresses were resolved and checked once before the driver started; any other host the
// driver asks for (a MongoDB replica set member, a redirect) is resolved and checked on the spot.
type guardedDialer struct {
	policy   *Policy
	resolver Resolver
	host     string
	pinned   []netip.Addr
	dialer   net.Dialer

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// closeAll closes every connection this dialer made. Test calls it when the attempt's deadline passes, so
// a driver that ignores its context while reading (go-mssqldb prelogin, go-ora) still returns on time.
func (g *guardedDialer) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for _, c := range g.conns {
		_ = c.Close()
	}
}

func (g *guardedDialer) track(c net.Conn) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		_ = c.Close()
		return nil, context.DeadlineExceeded
	}
	g.conns = append(g.conns, c)
	return c, nil
}

func (g *guardedDialer) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if strings.EqualFold(host, g.host) {
		return g.pinned, nil
	}
	for _, a := range g.pinned {
		if a.String() == host {
			return []netip.Addr{a}, nil
		}
	}
	return g.policy.Resolve(ctx, g.resolver, host)
}

// DialContext implements the dialer interfaces of the drivers (pgconn, mysql, mongo, mssql, go-ora).
func (g *guardedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("conntest: network %q is not allowed", network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("conntest: invalid port in %q", address)
	}
	addrs, err := g.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range addrs {
		if err := g.policy.Check(host, a); err != nil { // defence in depth: never dial an unchecked address
			return nil, err
		}
		c, err := g.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return g.track(c)
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// HostName makes guardedDialer an mssql.HostDialer, so go-mssqldb hands the host name to DialContext
// instead of resolving it itself with the system resolver.
func (g *guardedDialer) HostName() string { return g.host }
