/** Defaults of the original gh_gitlab_sync.py, kept so the two tools are interchangeable. */
export const DEFAULT_GITHUB_REPO = "rapidsai/velox-testing";
export const DEFAULT_WORKFLOW_FILE = ".github/workflows/presto-build-images.yml";
export const DEFAULT_GITHUB_API_URL = "https://api.github.com";
export const DEFAULT_GITLAB_HOST = "gitlab-master.nvidia.com";
export const DEFAULT_GITLAB_PROJECT = "hercules/veloxtesting";
export const DEFAULT_GITLAB_REGISTRY = "gitlab-master.nvidia.com:5005";
export const DEFAULT_DOWNLOADS_DIR = "downloads";
export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 1000;
export const DEFAULT_INTERVAL_SECONDS = 900;
/** Between full cycles the daemon asks GitHub "anything new?" this often (conditionally: free). */
export const DEFAULT_POLL_INTERVAL_SECONDS = 30;
export const STATE_SUBDIR = ".state";
/** The folder under the user's cache directory ($XDG_CACHE_HOME) for the listings' metadata cache. */
export const CACHE_SUBDIR = "gh-gitlab-sync";
/** HTTP timeouts that fit a slow VPN: connecting, and the longest silence within a request. */
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 30;
export const DEFAULT_HTTP_TIMEOUT_SECONDS = 120;
