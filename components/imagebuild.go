package components

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/pulumi/pulumi-azure-native-sdk/containerregistry/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ImageBuildType is the component's type token.
const ImageBuildType = "aks-edw:azure:ImageBuild"

// DefaultImageBuildTimeoutSeconds bounds one ACR build run (the consumer builds in about a minute).
const DefaultImageBuildTimeoutSeconds = 1800

var (
	commitRe      = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	shortCommitRe = regexp.MustCompile(`^[0-9a-fA-F]{7,39}$`)
	// gitRefRe is a conservative subset of git-check-ref-format: no spaces, no ~^:?*[\ and
	// none of the characters the ACR context URL uses as separators (# and :).
	gitRefRe = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	// tagBadChars are the characters an OCI tag may not contain.
	tagBadChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)
	// repositoryRe is the OCI distribution grammar for a repository path (lowercase components).
	repositoryRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	// runNameBadChars are the characters a task run name may not hold.
	runNameBadChars = regexp.MustCompile(`[^a-z0-9]+`)
)

// ImageSource is the git context an ACR task run builds from.
type ImageSource struct {
	// Repository is the git repository's https URL, e.g. https://github.com/org/repo.git (required).
	Repository string
	// Ref is the branch, tag or full 40-character commit SHA to build (required). Only a commit
	// pins the source: the image tag is derived from it (see ImageTag).
	Ref string
	// Folder is the build context inside the repository; empty or "." is the root (optional).
	Folder string
	// Dockerfile is the Dockerfile's path relative to the context (optional, default Dockerfile).
	Dockerfile string
}

// IsCommit reports whether the ref is a full commit SHA, the only ref that pins the source.
func (s ImageSource) IsCommit() bool { return commitRe.MatchString(s.Ref) }

// folder is the context folder with "." and surrounding slashes removed.
func (s ImageSource) folder() string {
	f := strings.Trim(s.Folder, "/")
	if f == "." {
		return ""
	}
	return f
}

// dockerfile is the Dockerfile path, defaulted.
func (s ImageSource) dockerfile() string {
	if s.Dockerfile == "" {
		return "Dockerfile"
	}
	return s.Dockerfile
}

// ContextURL is the ACR git build context: <repository>#<ref>[:<folder>].
func (s ImageSource) ContextURL() string {
	u := s.Repository + "#" + s.Ref
	if f := s.folder(); f != "" {
		u += ":" + f
	}
	return u
}

// ImageTag derives the image tag from the ref, so the tag (and so the Deployment's pod
// template) changes exactly when the source revision does: a commit gives sha-<first 12 hex>;
// a branch or tag name gives the name with characters a tag cannot hold replaced by "-" (a
// moving ref: the tag does not change when the branch moves, which is why CI passes a commit).
func ImageTag(ref string) string {
	if commitRe.MatchString(ref) {
		return "sha-" + strings.ToLower(ref[:12])
	}
	t := tagBadChars.ReplaceAllString(ref, "-")
	t = strings.TrimLeft(t, ".-")
	if t == "" {
		t = "ref"
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// Validate reports every problem with the source at once; the messages name the field's
// config key (imageSourceRepository, imageSourceRef, imageSourceFolder, imageDockerfile).
func (s ImageSource) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if s.Repository == "" {
		add("imageSourceRepository is required when image is empty: set it to the https URL of the git repository " +
			"that holds this project's Dockerfile (your copy of it; an ACR task run builds the consumer from there), " +
			"or set image to a consumer image built elsewhere")
	} else if u, err := url.Parse(s.Repository); err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" || u.User != nil {
		add("imageSourceRepository (%q) must be an https git URL without credentials or #fragment, e.g. https://github.com/org/repo.git", s.Repository)
	}
	switch {
	case s.Ref == "":
		add("imageSourceRef must name the commit (full 40-character SHA), branch or tag to build")
	case shortCommitRe.MatchString(s.Ref) && !gitNameLike(s.Ref):
		add("imageSourceRef (%q) looks like an abbreviated commit: git build contexts need the full 40-character SHA", s.Ref)
	case !gitRefRe.MatchString(s.Ref) || strings.Contains(s.Ref, "..") || strings.HasPrefix(s.Ref, "-") ||
		strings.HasPrefix(s.Ref, "/") || strings.HasSuffix(s.Ref, "/") || strings.HasSuffix(s.Ref, ".lock"):
		add("imageSourceRef (%q) is not a valid git ref (letters, digits, . _ / -; no .., no leading - or /)", s.Ref)
	}
	if f := s.Folder; f != "" && (strings.ContainsAny(f, "#: \t\n\\") || strings.HasPrefix(f, "/") || hasDotDot(f)) {
		add("imageSourceFolder (%q) must be a relative folder inside the repository (no leading /, no .., no # : or spaces)", f)
	}
	if d := s.dockerfile(); strings.ContainsAny(d, "#: \t\n\\") || strings.HasPrefix(d, "/") || hasDotDot(d) {
		add("imageDockerfile (%q) must be a relative path inside the build context", d)
	}
	return errors.Join(errs...)
}

// gitNameLike is true for all-hex strings that are plausibly branch names too (all digits,
// e.g. a release "2025"), which are not flagged as abbreviated commits.
func gitNameLike(s string) bool { return strings.Trim(s, "0123456789") == "" }

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// ValidateBuildTimeout checks a build run's time limit against ACR's limits; the message names
// the config key imageBuildTimeoutSeconds.
func ValidateBuildTimeout(seconds int) error {
	if seconds < 300 || seconds > 28800 {
		return fmt.Errorf("imageBuildTimeoutSeconds (%d) must be between 300 and 28800 (ACR's limits for a run)", seconds)
	}
	return nil
}

// ImageBuildArgs configures the image build.
type ImageBuildArgs struct {
	// ResourceGroupName is the registry's resource group (required).
	ResourceGroupName pulumi.StringInput
	// RegistryName is the registry the task runs in and pushes to (required).
	RegistryName pulumi.StringInput
	// LoginServer is the registry's login server, for the image reference (required).
	LoginServer pulumi.StringInput
	// Location is the task run's region, the registry's (required).
	Location pulumi.StringInput
	// Repository is the image repository in the registry, e.g. aws2azure/aqs-consumer (required).
	Repository string
	// Source is the git context (required; validated).
	Source ImageSource
	// TimeoutSeconds bounds the run (optional, default DefaultImageBuildTimeoutSeconds, 300-28800).
	TimeoutSeconds int
}

func (a *ImageBuildArgs) validate() error {
	if a == nil {
		return errors.New("args are required")
	}
	errs := missing(
		arg{"ResourceGroupName", a.ResourceGroupName != nil},
		arg{"RegistryName", a.RegistryName != nil},
		arg{"LoginServer", a.LoginServer != nil},
		arg{"Location", a.Location != nil},
	)
	if !repositoryRe.MatchString(a.Repository) {
		errs = append(errs, fmt.Errorf("image repository (%q) must be a lowercase path like team/app", a.Repository))
	}
	if a.TimeoutSeconds != 0 {
		if err := ValidateBuildTimeout(a.TimeoutSeconds); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.Source.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ImageBuild builds an image in Azure Container Registry from a git context, with no Docker
// daemon where Pulumi runs: one ACR task run (a quick run, what `az acr build` does) with a
// Docker build step. A new source revision gives a new tag, so the run request changes, the run
// repeats, and whatever uses Image rolls out the new image.
type ImageBuild struct {
	pulumi.ResourceState

	// TaskRun is the ACR task run; workloads that run the image depend on it.
	TaskRun *containerregistry.TaskRun
	// Tag is the image tag derived from the source ref.
	Tag pulumi.StringOutput
	// Image is the full reference: <login server>/<repository>:<tag>.
	Image pulumi.StringOutput
}

// taskRunName is the run's name in the registry: letters, digits and hyphens, at most 50.
func taskRunName(repository string) string {
	n := "build-" + strings.Trim(runNameBadChars.ReplaceAllString(repository, "-"), "-")
	if len(n) > 50 {
		n = strings.TrimRight(n[:50], "-")
	}
	return n
}

// taskRunArgs is the pure builder of the task run for a tag.
func taskRunArgs(a *ImageBuildArgs, tag string) *containerregistry.TaskRunArgs {
	timeout := a.TimeoutSeconds
	if timeout == 0 {
		timeout = DefaultImageBuildTimeoutSeconds
	}
	return &containerregistry.TaskRunArgs{
		ResourceGroupName: a.ResourceGroupName,
		RegistryName:      a.RegistryName,
		Location:          a.Location,
		TaskRunName:       pulumi.String(taskRunName(a.Repository)),
		// Re-run whenever the tag changes, even if Azure considered the request unchanged.
		ForceUpdateTag: pulumi.String(tag),
		RunRequest: containerregistry.DockerBuildRequestArgs{
			Type:           pulumi.String("DockerBuildRequest"),
			SourceLocation: pulumi.String(a.Source.ContextURL()),
			DockerFilePath: pulumi.String(a.Source.dockerfile()),
			// Relative to the registry: ACR prefixes its own login server.
			ImageNames:    pulumi.StringArray{pulumi.String(a.Repository + ":" + tag)},
			IsPushEnabled: pulumi.Bool(true),
			NoCache:       pulumi.Bool(false),
			// The NodePool the consumer runs on is linux/amd64.
			Platform: containerregistry.PlatformPropertiesArgs{
				Os:           containerregistry.OSLinux,
				Architecture: containerregistry.ArchitectureAmd64,
			},
			Timeout: pulumi.Int(timeout),
		},
	}
}

// NewImageBuild creates the ACR task run that builds and pushes the image.
func NewImageBuild(ctx *pulumi.Context, name string, args *ImageBuildArgs, opts ...pulumi.ResourceOption) (*ImageBuild, error) {
	if err := args.validate(); err != nil {
		return nil, fmt.Errorf("image build %q: invalid args: %w", name, err)
	}
	b := &ImageBuild{}
	if err := ctx.RegisterComponentResource(ImageBuildType, name, b, opts...); err != nil {
		return nil, fmt.Errorf("registering image build %q: %w", name, err)
	}
	tag := ImageTag(args.Source.Ref)
	run, err := containerregistry.NewTaskRun(ctx, name+"-task-run", taskRunArgs(args, tag),
		pulumi.Parent(b),
		// The run's name is fixed per repository: a replacement must delete the old run first.
		pulumi.DeleteBeforeReplace(true))
	if err != nil {
		return nil, fmt.Errorf("creating ACR task run %q: %w", name+"-task-run", err)
	}
	b.TaskRun = run
	b.Tag = pulumi.String(tag).ToStringOutput()
	b.Image = pulumi.Sprintf("%s/%s:%s", args.LoginServer, args.Repository, tag)
	if err := ctx.RegisterResourceOutputs(b, pulumi.Map{
		"taskRunName": run.Name,
		"tag":         b.Tag,
		"image":       b.Image,
	}); err != nil {
		return nil, fmt.Errorf("registering image build %q outputs: %w", name, err)
	}
	return b, nil
}
