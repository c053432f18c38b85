package router

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// PII type names, as vLLM Semantic Router's pii_policy uses them.
const (
	PIIEmail      = "EMAIL_ADDRESS"
	PIIPhone      = "PHONE_NUMBER"
	PIISSN        = "US_SSN"
	PIICreditCard = "CREDIT_CARD"
	PIIIPAddress  = "IP_ADDRESS"
	PIIIBAN       = "IBAN_CODE"
)

// PIITypes lists every type the detector reports.
var PIITypes = []string{PIIEmail, PIIPhone, PIISSN, PIICreditCard, PIIIPAddress, PIIIBAN}

func knownPIIType(t string) bool { return slices.Contains(PIITypes, t) }

// piiDetector holds compiled patterns; it is immutable and shared.
type piiDetector struct {
	email, phone, ssn, card, ipv4, ipv6, iban *regexp.Regexp
}

func newPIIDetector() *piiDetector {
	return &piiDetector{
		email: regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`),
		// North American and international forms with separators; bare
		// digit runs are left to the card and SSN checks.
		phone: regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b`),
		ssn:   regexp.MustCompile(`\b(\d{3})-(\d{2})-(\d{4})\b`),
		card:  regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`),
		ipv4:  regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`),
		ipv6:  regexp.MustCompile(`\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b`),
		iban:  regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`),
	}
}

// Detect returns the PII types found in text, sorted.
func (d *piiDetector) Detect(text string) []string {
	var found []string
	if d.email.MatchString(text) {
		found = append(found, PIIEmail)
	}
	for _, m := range d.ssn.FindAllStringSubmatch(text, -1) {
		// Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
		if m[1] != "000" && m[1] != "666" && m[1][0] != '9' && m[2] != "00" && m[3] != "0000" {
			found = append(found, PIISSN)
			break
		}
	}
	// The phone pattern wants 3-3-4 digit groups, so an SSN (3-2-4) never
	// counts as a phone number too.
	if d.phone.MatchString(text) {
		found = append(found, PIIPhone)
	}
	for _, m := range d.card.FindAllString(text, -1) {
		if luhnValid(m) {
			found = append(found, PIICreditCard)
			break
		}
	}
	if d.hasIP(text) {
		found = append(found, PIIIPAddress)
	}
	for _, m := range d.iban.FindAllString(text, -1) {
		if ibanValid(m) {
			found = append(found, PIIIBAN)
			break
		}
	}
	slices.Sort(found)
	return found
}

func (d *piiDetector) hasIP(text string) bool {
	for _, m := range d.ipv4.FindAllString(text, -1) {
		if _, err := netip.ParseAddr(m); err == nil {
			return true
		}
	}
	for _, m := range d.ipv6.FindAllString(text, -1) {
		if a, err := netip.ParseAddr(m); err == nil && a.Is6() {
			return true
		}
	}
	return false
}

// luhnValid checks the card-number checksum, which rules out most random
// digit runs (order numbers, timestamps).
func luhnValid(s string) bool {
	var digits []int
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits = append(digits, int(r-'0'))
		}
	}
	if len(digits) < 13 || len(digits) > 19 {
		return false
	}
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := digits[i]
		if (len(digits)-1-i)%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// ibanValid checks the ISO 13616 mod-97 checksum.
func ibanValid(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	rearranged := s[4:] + s[:4]
	rem := 0
	for _, r := range rearranged {
		switch {
		case r >= '0' && r <= '9':
			rem = (rem*10 + int(r-'0')) % 97
		case r >= 'A' && r <= 'Z':
			rem = (rem*100 + int(r-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

// piiDecision applies a model's policy to detected types and returns the
// denied ones and the policy's name.
func piiDecision(p PIIPolicy, types []string) (denied []string, policy string) {
	allowByDefault := p.AllowByDefault == nil || *p.AllowByDefault
	if allowByDefault {
		for _, t := range types {
			if slices.Contains(p.PIITypesDenied, t) {
				denied = append(denied, t)
			}
		}
		return denied, "allow_by_default"
	}
	for _, t := range types {
		if !slices.Contains(p.PIITypesAllowed, t) {
			denied = append(denied, t)
		}
	}
	return denied, "deny_by_default"
}
