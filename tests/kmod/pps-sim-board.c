// SPDX-License-Identifier: GPL-2.0
/*
 * pps-sim-board: the "board file" of skytime's kernel-PPS test VM.
 *
 * On the Pi a device-tree overlay tells pps-gpio which GPIO line carries
 * the pulse. The test VM is an x86 PC without a device tree (and Debian's
 * 6.1 gpiolib cannot yet resolve GPIOs through software nodes), so this
 * module does what a board file does: it maps the GPIO of the platform
 * device "pps-gpio.0" to line `line` of the chip labelled `chip` (a
 * gpio-sim bank the guest's /init creates through configfs), then
 * registers that device. pps-gpio binds to it and offers /dev/pps0; if the
 * chip is not there yet the probe is deferred until it is.
 *
 * pps-gpio asks for its pulse GPIO without a name, and a lookup entry
 * without a name also answers its optional "echo" GPIO, which would then
 * be the pulse line itself (busy). So the echo gets its own line first in
 * the table, `echo_line`, with the "echo-active-ms" property pps-gpio
 * wants for it: pps-gpio raises it for that long after each pulse.
 *
 * Loaded only in the test VM (tests/tests/kernel_pps_vm.rs), built by
 * tests/scripts/build-vm-modules.sh.
 */
#include <linux/err.h>
#include <linux/gpio/machine.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/property.h>

static char *chip = "skytime-sim";
module_param(chip, charp, 0444);
MODULE_PARM_DESC(chip, "label of the GPIO chip that carries the pulse");

static ushort line;
module_param(line, ushort, 0444);
MODULE_PARM_DESC(line, "line (offset on the chip) that carries the pulse");

static ushort echo_line = 2;
module_param(echo_line, ushort, 0444);
MODULE_PARM_DESC(echo_line, "line pps-gpio echoes each pulse on");

static struct gpiod_lookup_table pps_lookup = {
	.dev_id = "pps-gpio.0",
	.table = {
		/* Keys and lines are filled in from the parameters at load. */
		GPIO_LOOKUP_IDX(NULL, 0, "echo", 0, GPIO_ACTIVE_HIGH),
		GPIO_LOOKUP_IDX(NULL, 0, NULL, 0, GPIO_ACTIVE_HIGH),
		{ },
	},
};

static const struct property_entry pps_properties[] = {
	PROPERTY_ENTRY_U32("echo-active-ms", 100),
	{ }
};

static const struct platform_device_info pps_info = {
	.name = "pps-gpio",
	.id = 0,
	.properties = pps_properties,
};

static struct platform_device *pps_dev;

static int __init pps_sim_board_init(void)
{
	pps_lookup.table[0].key = chip;
	pps_lookup.table[0].chip_hwnum = echo_line;
	pps_lookup.table[1].key = chip;
	pps_lookup.table[1].chip_hwnum = line;
	gpiod_add_lookup_table(&pps_lookup);

	pps_dev = platform_device_register_full(&pps_info);
	if (IS_ERR(pps_dev)) {
		gpiod_remove_lookup_table(&pps_lookup);
		return PTR_ERR(pps_dev);
	}
	pr_info("pps-sim-board: pps-gpio.0 on %s line %u, echo on line %u\n",
		chip, line, echo_line);
	return 0;
}

static void __exit pps_sim_board_exit(void)
{
	platform_device_unregister(pps_dev);
	gpiod_remove_lookup_table(&pps_lookup);
}

module_init(pps_sim_board_init);
module_exit(pps_sim_board_exit);
MODULE_DESCRIPTION("pps-gpio on a gpio-sim line, for skytime's test VM");
MODULE_LICENSE("GPL");
