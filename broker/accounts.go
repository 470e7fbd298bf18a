package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/store/identity"
)

// Accounts are the local MQTT accounts of generic clients (PLC gateways,
// sensors, scripts: anything that is not an Azure IoT SDK client), from the
// `mqttBroker` section of the $edgeHub desired properties (or a standalone
// edge's --deployment):
//
//	{"mqttBroker": {
//	  "accounts": [{"name": "plc1", "passwordHash": "$2a$10$…", "clientIds": "plc1-*"},
//	               {"name": "cam", "certThumbprint": "AB12…", "clientIds": ["cam-1", "cam-2"]}],
//	  "anonymous": "loopback"}}
//
// A client proves an account with its user name and a password whose
// bcrypt hash is passwordHash (`outpost mqtt hash-password`), or with a
// TLS client certificate whose SHA-1 or SHA-256 thumbprint is
// certThumbprint (user name empty or the account's). clientIds restricts
// the client ids the account may use: glob patterns where '*' matches any
// run of characters and '?' one; none means any. "anonymous": "loopback"
// admits clients that send no credentials from 127.0.0.0/8 and ::1 only,
// as the account "anonymous"; "off" (the default) refuses them. The
// zero Accounts admits nobody.
type Accounts struct {
	byName    map[string]*Account
	byThumb   map[string]*Account
	anonymous bool
}

// Account is one local MQTT account.
type Account struct {
	Name           string
	PasswordHash   []byte   // bcrypt; nil: no password login
	CertThumbprint string   // upper-case hex, SHA-1 or SHA-256 of the DER certificate; "": none
	ClientIDs      []string // glob patterns; empty: any client id
}

// AnonymousAccount is the account of clients admitted without credentials.
const AnonymousAccount = "anonymous"

type accountsJSON struct {
	MQTTBroker struct {
		Accounts []struct {
			Name           string          `json:"name"`
			PasswordHash   string          `json:"passwordHash"`
			Password       *string         `json:"password"`
			CertThumbprint string          `json:"certThumbprint"`
			ClientIDs      json.RawMessage `json:"clientIds"`
		} `json:"accounts"`
		Anonymous string `json:"anonymous"`
	} `json:"mqttBroker"`
}

// ParseAccounts reads the accounts from $edgeHub desired properties; a
// document without mqttBroker.accounts gives no accounts and anonymous off.
func ParseAccounts(desired []byte) (*Accounts, error) {
	var doc accountsJSON
	if err := json.Unmarshal(desired, &doc); err != nil {
		return nil, fmt.Errorf("mqttBroker accounts: %w", err)
	}
	a := &Accounts{byName: map[string]*Account{}, byThumb: map[string]*Account{}}
	switch doc.MQTTBroker.Anonymous {
	case "", "off":
	case "loopback":
		a.anonymous = true
	default:
		return nil, fmt.Errorf(`mqttBroker.anonymous is %q; want "off" (the default) or "loopback"`, doc.MQTTBroker.Anonymous)
	}
	for i, j := range doc.MQTTBroker.Accounts {
		acct, err := newAccount(j.Name, j.PasswordHash, j.Password != nil, j.CertThumbprint, j.ClientIDs)
		if err != nil {
			return nil, fmt.Errorf("mqttBroker.accounts[%d]: %w", i, err)
		}
		if _, dup := a.byName[acct.Name]; dup {
			return nil, fmt.Errorf("mqttBroker.accounts[%d]: the name %q is used twice", i, acct.Name)
		}
		a.byName[acct.Name] = acct
		if acct.CertThumbprint != "" {
			if other, dup := a.byThumb[acct.CertThumbprint]; dup {
				return nil, fmt.Errorf("mqttBroker.accounts[%d]: certThumbprint is also the thumbprint of %q; a certificate proves one account", i, other.Name)
			}
			a.byThumb[acct.CertThumbprint] = acct
		}
	}
	return a, nil
}

func newAccount(name, hash string, clear bool, thumb string, ids json.RawMessage) (*Account, error) {
	if err := checkAccountName(name); err != nil {
		return nil, err
	}
	acct := &Account{Name: name}
	if clear {
		return nil, fmt.Errorf("account %q has a clear-text password; passwords are never stored in clear: put its bcrypt hash in passwordHash (`outpost mqtt hash-password` makes one)", name)
	}
	if hash != "" {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("account %q: passwordHash is not a bcrypt hash (%v); make one with `outpost mqtt hash-password`", name, err)
		}
		acct.PasswordHash = []byte(hash)
	}
	if thumb != "" {
		if acct.CertThumbprint = identity.NormalizeThumbprint(thumb); acct.CertThumbprint == "" {
			return nil, fmt.Errorf("account %q: certThumbprint %q is not the hex SHA-1 (40 digits) or SHA-256 (64 digits) of a certificate", name, thumb)
		}
	}
	if acct.PasswordHash == nil && acct.CertThumbprint == "" {
		return nil, fmt.Errorf("account %q has neither passwordHash nor certThumbprint: nothing could prove it", name)
	}
	var err error
	if acct.ClientIDs, err = parseClientIDs(name, ids); err != nil {
		return nil, err
	}
	return acct, nil
}

// checkAccountName keeps account names apart from IoT Hub identities'
// user names ("<host>/<device>/…") and safe as a policy identity.
func checkAccountName(name string) error {
	switch {
	case name == "":
		return errors.New("an account has no name")
	case name == AnonymousAccount:
		return fmt.Errorf("the account name %q is reserved for clients admitted without credentials (\"anonymous\": \"loopback\")", name)
	case len(name) > 128:
		return fmt.Errorf("account name %.20q… is %d bytes; the limit is 128", name, len(name))
	case strings.ContainsAny(name, "/+#{}\x00"):
		return fmt.Errorf("account name %q holds one of / + # { } or NUL; use letters, digits, '-', '_', '.', ':' or '@'", name)
	}
	return nil
}

func parseClientIDs(name string, raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("account %q: clientIds: %w", name, err)
		}
		list = []string{one}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("account %q: clientIds is neither a pattern nor a list of patterns: %w", name, err)
	}
	for _, p := range list {
		if p == "" || len(p) > 256 {
			return nil, fmt.Errorf("account %q: clientIds pattern %q must have 1 to 256 bytes", name, p)
		}
	}
	return list, nil
}

// Anonymous reports whether clients without credentials are admitted
// (from loopback only).
func (a *Accounts) Anonymous() bool { return a != nil && a.anonymous }

// Named returns the account of a name.
func (a *Accounts) Named(name string) (*Account, bool) {
	if a == nil {
		return nil, false
	}
	acct, ok := a.byName[name]
	return acct, ok
}

// ByThumbprint returns the account whose certThumbprint is one of thumbs
// (upper-case hex).
func (a *Accounts) ByThumbprint(thumbs ...string) (*Account, bool) {
	if a == nil {
		return nil, false
	}
	for _, t := range thumbs {
		if acct, ok := a.byThumb[t]; ok {
			return acct, true
		}
	}
	return nil, false
}

// AllowsClientID reports whether the account may use a client id.
func (acct *Account) AllowsClientID(id string) bool {
	if len(acct.ClientIDs) == 0 {
		return true
	}
	for _, p := range acct.ClientIDs {
		if globMatch(p, id) {
			return true
		}
	}
	return false
}

// same reports whether two versions of an account admit the same
// credentials and client ids (a session of the old one may go on).
func (acct *Account) same(o *Account) bool {
	return o != nil && acct.Name == o.Name && bytes.Equal(acct.PasswordHash, o.PasswordHash) &&
		acct.CertThumbprint == o.CertThumbprint && strings.Join(acct.ClientIDs, "\x00") == strings.Join(o.ClientIDs, "\x00")
}

// globMatch matches s against a pattern of literal bytes, '*' (any run,
// '/' included) and '?' (one byte), in O(len(p)·len(s)) without
// backtracking blow-up.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && p[px] == '*': // before the literal case: a '*' in the name is no match for it
			star, mark = px, sx
			px++
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// SetAccounts replaces the local accounts and ends the live sessions of
// generic clients whose account was removed or whose credentials or
// client ids changed (anonymous ones when anonymous was turned off).
func (b *Broker) SetAccounts(a *Accounts) {
	b.accounts.Store(a)
	b.mu.Lock()
	var generic []*session
	for _, s := range b.sessions {
		if s.login.Account != "" {
			generic = append(generic, s)
		}
	}
	b.mu.Unlock()
	for _, s := range generic {
		b.recheck(s)
	}
}

// recheckAccount tells whether a generic client's session may go on with
// the accounts now in force.
func (b *Broker) recheckAccount(l Login) error {
	accts := b.accounts.Load()
	if l.Account == AnonymousAccount {
		if !accts.Anonymous() {
			return errors.New("anonymous clients were turned off (mqttBroker.anonymous)")
		}
		return nil
	}
	now, ok := accts.Named(l.Account)
	if !ok {
		return fmt.Errorf("account %q was removed", l.Account)
	}
	if was, _ := l.Basis.(*Account); !now.same(was) {
		return fmt.Errorf("account %q changed (password, certificate or client ids)", l.Account)
	}
	return nil
}
