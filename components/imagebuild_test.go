package components

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/internals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aks-edw/aks-edw/harness/pulumitest"
)

const (
	typeTaskRun = "azure-native:containerregistry:TaskRun"
	commitA     = "0123456789abcdef0123456789abcdef01234567"
	commitB     = "89abcdef0123456789abcdef0123456789abcdef"
)

func TestImageTag(t *testing.T) {
	tests := []struct{ ref, want string }{
		{commitA, "sha-0123456789ab"},
		{strings.ToUpper(commitA), "sha-0123456789ab"},
		{commitB, "sha-89abcdef0123"},
		{"main", "main"},
		{"release/1.2", "release-1.2"},
		{"v1.2.3", "v1.2.3"},
		{"-odd", "odd"},
		{strings.Repeat("b", 200), strings.Repeat("b", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got := ImageTag(tt.ref)
			assert.Equal(t, tt.want, got)
			assert.Regexp(t, `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`, got, "an OCI tag")
		})
	}
	assert.NotEqual(t, ImageTag(commitA), ImageTag(commitB), "a new revision must give a new tag")
}

func TestImageSourceContextURL(t *testing.T) {
	repo := "https://github.com/aks-edw/aks-edw.git"
	tests := []struct {
		folder, want string
	}{
		{"", repo + "#" + commitA},
		{".", repo + "#" + commitA},
		{"src/consumer", repo + "#" + commitA + ":src/consumer"},
		{"/src/", repo + "#" + commitA + ":src"},
	}
	for _, tt := range tests {
		s := ImageSource{Repository: repo, Ref: commitA, Folder: tt.folder}
		assert.Equal(t, tt.want, s.ContextURL(), "folder %q", tt.folder)
	}
}

func TestImageSourceValidate(t *testing.T) {
	good := ImageSource{Repository: "https://github.com/aks-edw/aks-edw.git", Ref: commitA, Folder: "", Dockerfile: "Dockerfile"}
	require.NoError(t, good.Validate())
	for _, ok := range []func(*ImageSource){
		func(s *ImageSource) { s.Ref = "main" },
		func(s *ImageSource) { s.Ref = "release/2025.11" },
		func(s *ImageSource) { s.Ref = "20251123" }, // all digits: a name, not an abbreviated commit
		func(s *ImageSource) { s.Folder = "app/consumer" },
		func(s *ImageSource) { s.Dockerfile = "build/Dockerfile.consumer" },
	} {
		s := good
		ok(&s)
		assert.NoError(t, s.Validate(), "%+v", s)
	}

	tests := []struct {
		name   string
		mutate func(*ImageSource)
		want   string
	}{
		{"http repository", func(s *ImageSource) { s.Repository = "http://github.com/x/y.git" }, "imageSourceRepository"},
		{"credentials in URL", func(s *ImageSource) { s.Repository = "https://user:pat@github.com/x/y.git" }, "imageSourceRepository"},
		{"fragment in URL", func(s *ImageSource) { s.Repository = "https://github.com/x/y.git#main" }, "imageSourceRepository"},
		{"empty repository", func(s *ImageSource) { s.Repository = "" }, "imageSourceRepository"},
		{"empty ref", func(s *ImageSource) { s.Ref = "" }, "imageSourceRef must name"},
		{"short commit", func(s *ImageSource) { s.Ref = "0123abc" }, "abbreviated commit"},
		{"ref with colon", func(s *ImageSource) { s.Ref = "main:src" }, "imageSourceRef (\"main:src\") is not a valid git ref"},
		{"ref with dots", func(s *ImageSource) { s.Ref = "a..b" }, "not a valid git ref"},
		{"ref with space", func(s *ImageSource) { s.Ref = "my branch" }, "not a valid git ref"},
		{"absolute folder", func(s *ImageSource) { s.Folder = "/etc" }, "imageSourceFolder"},
		{"escaping folder", func(s *ImageSource) { s.Folder = "src/../.." }, "imageSourceFolder"},
		{"folder with hash", func(s *ImageSource) { s.Folder = "a#b" }, "imageSourceFolder"},
		{"escaping dockerfile", func(s *ImageSource) { s.Dockerfile = "../Dockerfile" }, "imageDockerfile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.mutate(&s)
			err := s.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	// Every problem at once.
	err := ImageSource{Repository: "ftp://x", Ref: "", Folder: "/x"}.Validate()
	require.Error(t, err)
	for _, k := range []string{"imageSourceRepository", "imageSourceRef", "imageSourceFolder"} {
		assert.Contains(t, err.Error(), k)
	}
}

func testImageBuildArgs() *ImageBuildArgs {
	return &ImageBuildArgs{
		ResourceGroupName: pulumi.String("rg-aksdemo-x7k2p9"),
		RegistryName:      pulumi.String("acraksdemox7k2p9"),
		LoginServer:       pulumi.String("acraksdemox7k2p9.azurecr.io"),
		Location:          pulumi.String("westus3"),
		Repository:        "aws2azure/aqs-consumer",
		Source: ImageSource{
			Repository: "https://github.com/aks-edw/aks-edw.git",
			Ref:        commitA,
			Folder:     "src",
			Dockerfile: "Dockerfile",
		},
	}
}

func TestImageBuildTaskRun(t *testing.T) {
	var build *ImageBuild
	var image, tag internals.UnsafeAwaitOutputResult
	m := runAzure(t, func(ctx *pulumi.Context) error {
		var err error
		if build, err = NewImageBuild(ctx, "consumer-image", testImageBuildArgs()); err != nil {
			return err
		}
		if image, err = internals.UnsafeAwaitOutput(ctx.Context(), build.Image); err != nil {
			return err
		}
		tag, err = internals.UnsafeAwaitOutput(ctx.Context(), build.Tag)
		return err
	})
	requireChildrenParented(t, m, ImageBuildType)
	run := m.Get(t, typeTaskRun, "consumer-image-task-run")
	assert.True(t, run.DeleteBeforeReplace, "the fixed run name needs delete-before-replace")
	assert.Equal(t, "build-aws2azure-aqs-consumer", run.Input("taskRunName"))
	assert.Equal(t, "acraksdemox7k2p9", run.Input("registryName"))
	assert.Equal(t, "rg-aksdemo-x7k2p9", run.Input("resourceGroupName"))
	assert.Equal(t, "westus3", run.Input("location"))
	assert.Equal(t, "sha-0123456789ab", run.Input("forceUpdateTag"))
	assert.Equal(t, "DockerBuildRequest", run.Input("runRequest.type"))
	assert.Equal(t, "https://github.com/aks-edw/aks-edw.git#"+commitA+":src", run.Input("runRequest.sourceLocation"))
	assert.Equal(t, "Dockerfile", run.Input("runRequest.dockerFilePath"))
	assert.Equal(t, []any{"aws2azure/aqs-consumer:sha-0123456789ab"}, run.Input("runRequest.imageNames"))
	assert.Equal(t, true, run.Input("runRequest.isPushEnabled"))
	assert.Equal(t, "Linux", run.Input("runRequest.platform.os"))
	assert.Equal(t, "amd64", run.Input("runRequest.platform.architecture"))
	assert.EqualValues(t, DefaultImageBuildTimeoutSeconds, run.Input("runRequest.timeout"))

	assert.Equal(t, "acraksdemox7k2p9.azurecr.io/aws2azure/aqs-consumer:sha-0123456789ab", image.Value)
	assert.Equal(t, "sha-0123456789ab", tag.Value)
	require.NotNil(t, build.TaskRun)
}

// A new source revision changes the run request (so Azure runs the build again) and the image.
func TestImageBuildFollowsRevision(t *testing.T) {
	inputs := map[string][2]any{}
	for _, ref := range []string{commitA, commitB} {
		m := runAzure(t, func(ctx *pulumi.Context) error {
			a := testImageBuildArgs()
			a.Source.Ref = ref
			_, err := NewImageBuild(ctx, "consumer-image", a)
			return err
		})
		run := m.One(t, typeTaskRun)
		inputs[ref] = [2]any{run.Input("runRequest.imageNames.0"), run.Input("runRequest.sourceLocation")}
		assert.Contains(t, run.Input("runRequest.sourceLocation"), "#"+ref)
	}
	assert.NotEqual(t, inputs[commitA][0], inputs[commitB][0], "image name must change with the revision")
	assert.NotEqual(t, inputs[commitA][1], inputs[commitB][1], "source location must change with the revision")
}

func TestImageBuildValidation(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ImageBuildArgs)
		want []string
	}{
		{"no registry", func(a *ImageBuildArgs) { a.RegistryName, a.LoginServer = nil, nil }, []string{"RegistryName is required", "LoginServer is required"}},
		{"bad repository", func(a *ImageBuildArgs) { a.Repository = "Team/App" }, []string{"image repository (\"Team/App\")"}},
		{"timeout", func(a *ImageBuildArgs) { a.TimeoutSeconds = 60 }, []string{"imageBuildTimeoutSeconds (60)"}},
		{"bad source", func(a *ImageBuildArgs) { a.Source.Ref = "abc1234" }, []string{"abbreviated commit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := pulumitest.New("aks-edw", "test")
			err := m.Run(nil, func(ctx *pulumi.Context) error {
				a := testImageBuildArgs()
				tt.edit(a)
				_, err := NewImageBuild(ctx, "consumer-image", a)
				return err
			})
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, m.Resources(), "nothing is registered on invalid args")
		})
	}
}

func TestTaskRunName(t *testing.T) {
	assert.Equal(t, "build-aws2azure-aqs-consumer", taskRunName("aws2azure/aqs-consumer"))
	long := taskRunName(strings.Repeat("abc/", 30))
	assert.LessOrEqual(t, len(long), 50)
	assert.Regexp(t, `^[a-z0-9-]+[a-z0-9]$`, long)
}
