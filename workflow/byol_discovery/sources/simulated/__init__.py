"""A seeded, realistic simulated optical galaxy set, written as the Legacy Surveys cutout service.

Modules: :mod:`.settings` (what to simulate), :mod:`.constants`, :mod:`.photometry`,
:mod:`.profiles`, :mod:`.canvas`, :mod:`.observing`, :mod:`.galaxies` (the classes) and
:mod:`.dataset` (one galaxy, a whole set; the source-type entry points).

Why: the whole pipeline (preprocessing, BYOL training, kNN validation, clustering, anomaly
ranking) must run for real without network access, on images whose truth is known. The
cutouts therefore follow the service's FITS layout exactly (float32 ``(3, H, W)`` grz cube
in nanomaggies per pixel, ``BANDS='grz'``, TAN WCS centred on the object) and the physics
is close enough to DECaLS that the downstream stages meet the problems they meet on real
data: PSF blur, sky and photon noise, neighbours in the frame, saturated stars.

Image model, per object (pixel coordinates: x = column, y = row, north up, east left as
in the service's cutouts, so a position angle east of north points along (-sin, cos)):

* Common classes: elliptical (Sersic n 3-5.5), spiral (n~1 disc, small bulge, optional
  bar, 2-4 logarithmic arms and star-forming knots, bluer than the disc) and edge-on disc
  (thin + thick disc, small bulge, optional dust lane that is more opaque in g than in z).
* Rare classes: merger (two galaxies 1-2.5 half-light radii apart with curved tidal
  tails), ring (bright clumpy ring, faint off-centre nucleus, sometimes an intruder) and
  artefact (a common galaxy plus a satellite trail or a saturated star with spikes).
* Sizes and magnitudes come from a drawn absolute magnitude and a luminosity-size
  relation placed at a Hubble-law distance, so ``redshift`` is a size/brightness proxy.
* Extended profiles are averaged over 2x2 sub-pixels (10x10 in the 5x5 pixels around a
  steep centre, so cusps are not aliased), blurred by a per-band Moffat PSF
  (beta 3.5, r-band FWHM 1.0-1.5 arcsec, g broader, z narrower), then given Gaussian sky
  noise plus the sources' Poisson noise, and a small residual sky offset (the service's
  images are sky-subtracted).

Noise and gain: per-pixel sky noise of a DECaLS coadd at 0.262"/px is about
0.0045 / 0.0075 / 0.018 nanomaggies in g / r / z (5-sigma point-source depths about
24.4 / 24.0 / 23.1 for a 1.2" PSF), scaled by a per-object depth factor 0.8-1.35. The
pre-subtraction sky is 22.0 / 20.9 / 19.9 mag/arcsec^2. The effective gain of the coadd is
chosen so that the sky's own photon noise is that sky noise: gain = sky / sigma^2, about
5400 / 5300 / 2300 electrons per nanomaggy. Since every pixel then holds over a thousand
sky electrons, the Poisson noise is drawn in its (exact to 0.1 %) Gaussian form. An r = 17
galaxy has an r-band peak S/N of about 20-80: median about 35 for edge-on discs, rings and
mergers, 55 for spirals and 70 for ellipticals.

Catalogue parameters (``CATALOGUE_COLUMNS``): host_morphology (the galaxy under an
artefact, else the class), r/g/z_mag (model magnitudes of the main object, after dust),
half_light_radius_arcsec (semi-major; the ring radius for rings), axis_ratio,
position_angle_deg (east of north), sersic_n (main component; NaN for rings), redshift
(distance proxy), bulge_fraction (1 for ellipticals, nucleus share for rings), n_arms,
arm_pitch_deg, has_bar, dust_lane, ring_radius_arcsec, companion_sep_arcsec and
companion_flux_ratio (merger partner or ring intruder), n_tidal_tails, artefact_type
(none / satellite_trail / bright_star), x/y_offset_px (from the frame centre),
psf_fwhm_arcsec and sky_sigma_nmgy (r band), n_field_stars, n_field_galaxies.

Determinism: object ``i`` draws only from ``SeedSequence(seed, spawn_key=(1, i))``, so its
pixels depend on (seed, i, class) and not on how many objects come before it. The class
list has exact counts (``round(rare_fraction * n)`` rare objects, split evenly) shuffled by
the ``spawn_key=(0,)`` stream.
"""
