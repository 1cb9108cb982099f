package infra

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOutputDocsCoverEveryOutput(t *testing.T) {
	var documented []string
	for _, d := range OutputDocs {
		assert.NotEmpty(t, d.What, "outputs %v", d.Keys)
		documented = append(documented, d.Keys...)
	}
	assert.Equal(t, OutputKeys, documented, "every output documented once, in OutputKeys order")
}
