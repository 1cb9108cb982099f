package producer

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	ok := Options{Count: 10, Concurrency: 1}
	require.NoError(t, ok.Validate())
	require.NoError(t, Options{Duration: time.Second, Concurrency: 4, Rate: 50}.Validate())

	err := Options{Count: -1, Duration: -time.Second, Rate: -1, Concurrency: 0, ProgressInterval: -1}.Validate()
	require.Error(t, err)
	for _, w := range []string{"count=-1", "duration=-1s", "rate=-1", "concurrency=0", "progress interval"} {
		assert.Contains(t, err.Error(), w)
	}
	err = Options{Concurrency: 1}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "set at least one")
}

func TestSummary(t *testing.T) {
	s := Summary{Sent: 100, Failed: 2, Elapsed: 2 * time.Second, Rate: 50}
	assert.Equal(t, "sent=100 failed=2 elapsed=2s rate=50.0 msg/s", s.String())
	assert.True(t, strings.HasPrefix(s.JSON(), `{"sent":100,"failed":2,"elapsedMs":2000,"rate":50}`))
}
