<?php
// The IMAGE's version (/usr/src/nextcloud/version.php): the model's images share one root
// filesystem, so it comes from NEXTCLOUD_VERSION, which each image's config sets (as the
// upstream Dockerfile does). The entrypoint writes a fixed copy onto the volume.
$OC_Version = array_map('intval', explode('.', (string) getenv('NEXTCLOUD_VERSION') . '.1'));
$OC_VersionString = (string) getenv('NEXTCLOUD_VERSION');
