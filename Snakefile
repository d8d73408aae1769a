# Entry point from the repository root: `snakemake --cores 2` runs the default config.
# The real workflow lives in workflow/Snakefile; the default target must be declared here,
# after the include, or Snakemake would run nothing from the root.

include: "workflow/Snakefile"


rule default:
    default_target: True
    input:
        rules.all.input,
