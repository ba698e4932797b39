<?php
// cron.php of libresh's Nextcloud MODEL: nothing to do before the install, while an upgrade
// is due or in maintenance mode (exits 0, as upstream); else records the run in oc_appconfig.

declare(strict_types=1);

require __DIR__ . '/lib/model.php';

$config = read_config();
if (!is_installed($config) || need_upgrade($config) || in_maintenance($config)) {
	exit(0);
}
appconfig_set(app_database($config), 'core', 'lastcron', (string) time());
