// Package suggest finds the name a user most likely meant ("did you mean ...?") for a mistyped
// config key or setting. It is a pure helper shared by the stack's config loading and the test
// and plan harnesses.
package suggest

import (
	"strings"
	"unicode"
)

// Closest returns the candidate the user most likely meant by word, and false when none is
// close enough to suggest. Two measures, in this order:
//   - the camelCase words they share (storageAccountSku shares storage and sku with storageSku,
//     more of its words than with storageAccountName), at least a third of their words together;
//   - otherwise the edit distance, for typos inside a word (prefx for prefix), at most a third
//     of the longer name.
func Closest(word string, candidates []string) (string, bool) {
	best, bestScore := "", 0.0
	for _, c := range candidates {
		if s := wordOverlap(word, c); s > bestScore || (s == bestScore && s > 0 && distance(word, c) < distance(word, best)) {
			best, bestScore = c, s
		}
	}
	if bestScore*3 >= 1 {
		return best, true
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := distance(strings.ToLower(word), strings.ToLower(c)); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist >= 0 && bestDist*3 <= max(len(word), len(best)) {
		return best, true
	}
	return "", false
}

// wordOverlap is the Jaccard index of the lower-cased camelCase words of a and b.
func wordOverlap(a, b string) float64 {
	wa, wb := words(a), words(b)
	common := 0
	for w := range wa {
		if wb[w] {
			common++
		}
	}
	union := len(wa) + len(wb) - common
	if union == 0 {
		return 0
	}
	return float64(common) / float64(union)
}

// words splits camelCase, snake_case and kebab-case names into lower-cased words.
func words(s string) map[string]bool {
	out := map[string]bool{}
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out[strings.ToLower(string(cur))] = true
			cur = cur[:0]
		}
	}
	for _, r := range s {
		switch {
		case r == '_' || r == '-' || r == '.' || r == ':':
			flush()
		case unicode.IsUpper(r):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return out
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
