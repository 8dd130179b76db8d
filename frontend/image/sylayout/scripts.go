package sylayout

// The scripts below are kerr's own. Singularity and Apptainer run images through their own
// built-in logic and read only env/*.sh, runscript, startscript and test from the image; the
// action scripts are here for tools and job scripts that call them directly
// (`/.singularity.d/actions/run`, or `/.run` from Singularity 2 days).

// sourceEnv is shared by every action: it loads the image's environment in name order.
const sourceEnv = `for kerr_env in /.singularity.d/env/*.sh; do
	if [ -f "$kerr_env" ]; then
		. "$kerr_env"
	fi
done
unset kerr_env
`

const actionExec = "#!/bin/sh\n" + sourceEnv + `exec "$@"
`

const actionRun = "#!/bin/sh\n" + sourceEnv + `if [ -x /.singularity.d/runscript ]; then
	exec /.singularity.d/runscript "$@"
fi
echo "kerr: this image has no runscript" >&2
exit 127
`

// actionShell prefers the shell the caller asked for, then bash, then sh.
const actionShell = "#!/bin/sh\n" + sourceEnv + `for kerr_sh in "${KERR_SHELL:-}" "${SINGULARITY_SHELL:-}" "${APPTAINER_SHELL:-}" /bin/bash /bin/sh; do
	if [ -n "$kerr_sh" ] && [ -x "$kerr_sh" ]; then
		SHELL=$kerr_sh
		export SHELL
		exec "$kerr_sh" "$@"
	fi
done
echo "kerr: no shell found in the image" >&2
exit 127
`

const actionStart = "#!/bin/sh\n" + sourceEnv + `if [ -x /.singularity.d/startscript ]; then
	exec /.singularity.d/startscript "$@"
fi
exit 0
`

const actionTest = "#!/bin/sh\n" + sourceEnv + `if [ -x /.singularity.d/test ]; then
	exec /.singularity.d/test "$@"
fi
echo "kerr: this image has no test script"
exit 0
`

const envBase = `#!/bin/sh
# Loaded first: a PATH for images that set none.
if [ -z "${PATH:-}" ]; then
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	export PATH
fi
`

const envUser = `#!/bin/sh
# The image's own environment: add exports here.
`

const envApps = `#!/bin/sh
# Per-application environment (SCIF apps); kerr images define none.
`

const envPrompt = `#!/bin/sh
PS1="Kerr> \w \$ "
export PS1
`

const envRuntime = `#!/bin/sh
# Loaded last. The runtime sets KERRENV_/SINGULARITYENV_/APPTAINERENV_ variables itself,
# after the image's environment, so they win over it.
`

const startscript = `#!/bin/sh
# An instance started from this image runs nothing until told to.
`
