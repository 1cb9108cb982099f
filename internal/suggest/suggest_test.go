package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"prefix", "storageSku", "storageAccountName", "registrySku", "maxReplicas", "minReplicas",
		"kubernetesVersion", "operatorIpRanges", "apiServerAuthorizedIpRanges", "queueLength"}
	for _, tc := range []struct {
		word, want string
		ok         bool
	}{
		{"storageAccountSku", "storageSku", true}, // shares more words with storageSku than storageAccountName
		{"prefx", "prefix", true},                 // a typo inside a word
		{"maxReplica", "maxReplicas", true},
		{"MaxReplicas", "maxReplicas", true},
		{"k8sVersion", "kubernetesVersion", true},
		{"operatorIPRanges", "operatorIpRanges", true},
		{"queue_length", "queueLength", true},
		{"somethingElseEntirely", "", false},
		{"zz", "", false},
	} {
		got, ok := Closest(tc.word, keys)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tc.word, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := Closest("anything", nil); ok || got != "" {
		t.Errorf("no candidates: got %q, %v", got, ok)
	}
}
