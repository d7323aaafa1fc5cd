"""The bottom layer: settings and the long-lived resources built from them (nothing here imports the
product's other packages except `crm.db`)."""
